"""Django's management commands for the catalog: ``python -m catalog migrate``, and so on."""

import os
import sys

from django.core.management import execute_from_command_line

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "catalog.settings")
    execute_from_command_line([f"{sys.executable} -m catalog", *sys.argv[1:]])
