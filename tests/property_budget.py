"""How many examples each hypothesis property draws. Every example with new shapes
compiles its own program, so the default keeps the suite within its time budget;
MTL_PROPERTY_EXAMPLES=100 python -m pytest runs the properties thoroughly."""
import os

EXAMPLES = int(os.environ.get("MTL_PROPERTY_EXAMPLES", "8"))
