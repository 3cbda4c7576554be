"""Figures, tables and the claims table: pure functions of the files under results/."""
