"""The torch side of the policies (training and the simulated VLA): the residual actor and critic networks
(:mod:`residual_learning.networks`), the behaviour-cloned sim base policy (:mod:`residual_learning.base_policy`)
and micro-benchmarks. Depended on by the trainer and by vla_base_node's sim_bc backend; never by the residual
node or the arbiter, which run the numpy form in :mod:`residual_core.residual_policy`."""

__version__ = "0.1.0"
