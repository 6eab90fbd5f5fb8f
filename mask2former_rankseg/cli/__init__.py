"""Command-line programs: training / evaluation (:mod:`.train`, ``train_net.py``, ``mask2former-rankseg-train``)
and the demo (:mod:`.demo`, ``demo/demo.py``, ``mask2former-rankseg-demo``). :mod:`.entry` holds the console
commands, which parse their arguments before importing torch."""
