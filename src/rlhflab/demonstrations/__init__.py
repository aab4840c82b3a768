"""Learning from demonstrations: behavioural cloning, DAgger, procedure cloning, inverse RL
(MaxEnt IRL, AIRL), GAIL and assistance games (CIRL).

`dataset` holds the trajectory format every method reads; `experts` the scripted experts
that produce demonstrations. The driver behind `rlhflab run method=…` is
`rlhflab.demonstrations_loop`; the identifiability table is `diagnostics.identifiability`.
"""
