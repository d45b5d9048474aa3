"""SympFormer: accelerated attention blocks via inertial dynamics on density manifolds."""
