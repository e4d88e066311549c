"""The online kind: tables' latest rows per key in the online store (Redis), planned like everything else."""
