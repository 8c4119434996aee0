"""MuJoCo Franka simulator: robot model, Cartesian controller, five task scenes, gymnasium environments, scripted experts, offscreen camera; plus the sim ROS node."""
