"""Tuned settings per env id (`<env id>.yaml`, '/' written as '__'): the layer under a user's
config file and overrides whenever a control run names that env. `rlhflab config show
env=<id>` prints the resolved result."""
