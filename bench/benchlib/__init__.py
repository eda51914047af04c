"""The pieces of bench/run.py: processes and /proc (procs), the upstream and the
targets (targets), the measurements (measure), other work on the machine
(quiet), the tables (report), the chart (chart) and the machine (machine)."""
