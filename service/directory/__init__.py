"""The partner directory: validation (one validator for the YAML file and the admin API), the file
read with positions, and the import into the database. See the modules for each."""

from service.directory.importing import (
    NO_TIER1,
    TIER1_UNREACHABLE,
    DirectoryFileInvalid,
    coverage_gaps,
    import_directory,
    import_directory_file,
    import_if_empty,
)
from service.directory.parsing import PARTNERS_A_PART, load_directory, parse_directory
from service.directory.validation import (
    ADDRESS_OF,
    AccountOwnerSpec,
    ContactSpec,
    Directory,
    DirectoryError,
    PartnerFields,
    PartnerSpec,
)

__all__ = [
    "ADDRESS_OF",
    "NO_TIER1",
    "PARTNERS_A_PART",
    "TIER1_UNREACHABLE",
    "AccountOwnerSpec",
    "ContactSpec",
    "Directory",
    "DirectoryError",
    "DirectoryFileInvalid",
    "PartnerFields",
    "PartnerSpec",
    "coverage_gaps",
    "import_directory",
    "import_directory_file",
    "import_if_empty",
    "load_directory",
    "parse_directory",
]
