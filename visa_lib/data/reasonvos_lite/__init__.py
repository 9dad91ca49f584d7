"""ReasonVOS-lite: the synthetic reasoning-VOS dataset the toy rung trains and evaluates on (ReVOS format).

* ``sprites``     -- the objects (photo cut-outs and flat shapes), their colours, names and categories.
* ``expressions`` -- what a query may say about an object (appearance, motion, position, knowledge, time)
  and the rule that keeps only queries that pick exactly their object.
* ``generator``   -- ``make_video`` (one video in memory) and ``generate_split`` (a split on disk).

Command line: ``python -m visa_lib.data.reasonvos_lite --out DIR --split valid --seed 1 --videos 24``.
"""

from visa_lib.data.reasonvos_lite.generator import generate_split, make_video

__all__ = ["generate_split", "make_video"]
