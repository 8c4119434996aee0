"""ROS 2 node: object poses from camera images with fiducial markers, or a ground-truth pass-through in sim."""
