"""One file per architecture family; importing this package registers every backbone, in this
order (which `list_backbones` keeps)."""

import importlib

for _module in ("resnet", "se_resnet", "densenet", "vgg", "alexnet", "googlenet", "lenet"):
    importlib.import_module(f"{__name__}.{_module}")
