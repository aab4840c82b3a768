"""Learning from demonstrations: behavioural cloning, DAgger, procedure cloning, inverse RL
(MaxEnt IRL, AIRL), GAIL and assistance games (CIRL).

`dataset` holds the trajectory format every method reads; `experts` the scripted experts
that produce demonstrations; `loop` the driver behind `rlhflab run method=…`.
"""
