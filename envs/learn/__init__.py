"""Algorithms over the environments' faces: trajectory optimization, system identification,
policy learning through the simulator (BPTT, SHAC), PPO glue, imitation."""
