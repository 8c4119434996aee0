"""ROS 2 node: object poses + proprioception + base action -> bounded residual, from a residual checkpoint."""
