"""The pieces of bench/run.py and bench/mesh.py: tools and the Release build
(build), processes and /proc (procs), the upstream and the targets (targets),
the measurements (measure), other work on the machine (quiet), the tables
(report), the chart (chart) and the machine (machine); for the mesh path, its
certificates (pki), its sidecar pairs and what is read around a run (mesh)
and its section (mesh_report)."""
