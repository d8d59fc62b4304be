# Hydra configs for regbench; shipped inside the package as regbench.conf.
