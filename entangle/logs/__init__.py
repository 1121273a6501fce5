"""Training logs in and out: the text logs of the SimGCD family and TensorBoard event files.

``import_log(files, out)`` writes an entangle run directory from them (docs/logs.md). Reading
TensorBoard files needs the ``[tb]`` extra, imported only when such a file is read; so does
writing them (``entangle.probing.tensorboard`` for ``Probe(tensorboard=)``,
``entangle.logs.tensorboard_out`` for ``entangle export tensorboard``).
"""

from entangle.logs.importer import ImportResult, import_log
from entangle.logs.text import TextLog, read_text_log

__all__ = ["ImportResult", "TextLog", "import_log", "read_text_log"]
