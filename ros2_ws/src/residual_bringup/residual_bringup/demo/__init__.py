"""``residual-demo`` (``make demo``): the sim graph in lockstep, base alone vs base + residual, recorded.

Modules: ``cli`` (arguments, the run), ``graph_process`` (ROS domain, residual-launch as a child), ``session`` (the
demo's own node: readiness, episodes, corrections), ``recording`` + ``msgdefs`` (MCAP), ``results`` (table, CSV,
JSON), ``plots`` (PNG).
"""
