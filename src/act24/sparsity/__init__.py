"""2:4 sparsity patterns (the reference math) and activation statistics."""
