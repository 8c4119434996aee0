"""Graph description of the residual-VLA stack, shared by the launch file and the residual-launch supervisor."""
