"""ROS 2 node: object poses from camera images with fiducial markers, or noisy ground truth in sim."""
