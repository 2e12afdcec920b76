"""Abrupt: every (1+k)·E epochs of a task are spent on task t, then task t+1 starts at once.

Nothing moves, so there is no transition and no stages; the task is read out at the end of
its (1+k)·E epochs, and every task family has it (the baseline arm).
"""

from gradual_jax.envs.schedules.base import Schedule

SCHEDULE = Schedule("abrupt", moves=None, words="abrupt", caption="each task for all (1+k)·E epochs")
