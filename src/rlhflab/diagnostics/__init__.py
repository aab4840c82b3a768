"""Diagnostics: see what RLHF did.

Over-optimisation alarms during training (`alarms`), measurements on fresh policy samples
(`probe`), reward-model evaluation (`calibration`, `epic`), text diversity (`diversity`),
the run report and the comparison of runs (`report`, `compare`), and the Casper et al. 2023
§5 disclosure sheet (`disclosure`), and Goodhart curves of gold against
optimisation pressure (`goodhart`). Everything after training reads the run directory alone.
"""
