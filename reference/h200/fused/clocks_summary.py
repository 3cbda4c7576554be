"""Summarise an nvidia-smi clock/power log (`--query-gpu=timestamp,clocks.sm,power.draw,temperature.gpu
--format=csv -lms 200`): readings, how many drew more than 600 W, and the SM clock then. Made the clock numbers
of README.md:
    python3 reference/h200/fused/clocks_summary.py reference/h200/fused/clocks_sweep_6451581.csv \
        reference/h200/fused/rounds1_sweep_6451581/clocks_sweep_6451581.csv"""
import csv
import sys

for path in sys.argv[1:]:
    readings = []
    for row in list(csv.reader(open(path)))[1:]:
        try:
            readings.append((float(row[1].split()[0]), float(row[2].split()[0])))
        except (IndexError, ValueError):  # a line cut off when the log was stopped
            pass
    high = [clock for clock, watts in readings if watts > 600]
    print(f"{path}: {len(readings)} readings, {len(high)} above 600 W at {min(high):.0f}-{max(high):.0f} MHz "
          f"(mean {sum(high) / len(high):.0f} MHz); highest clock {max(c for c, _ in readings):.0f} MHz")
