"""``python -m visa_lib.data.reasonvos_lite --out DIR --split NAME --seed S --videos K``."""

from visa_lib.data.reasonvos_lite.generator import main

main()
