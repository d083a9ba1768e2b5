"""Where the groups of a sweep run: in this process, or as submitit jobs (Slurm, or
submitit's local executor). registry.py maps --launcher's names to them; job.py is what
runs inside a job.

This file imports nothing: a job process imports this package to unpickle job.SweepJob,
and needs neither the other launchers nor the registry.
"""
