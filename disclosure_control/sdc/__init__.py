"""Statistical disclosure control: k-anonymity, l-diversity, risk measures and safe tables.

Data frames in, data frames and a report out. The record schema and the generalisation
hierarchies are passed in as data (the hub reads them from ``config/``), so this package
depends on nothing of the hub's.
"""

from disclosure_control.sdc.differencing import (
    DifferencingReport,
    Recovered,
    Tabulation,
    check_differencing,
    protect_against_differencing,
    tabulate,
)
from disclosure_control.sdc.generalise import (
    AnonymisationError,
    AnonymisationReport,
    AnonymisationResult,
    PrivacyModel,
    anonymise,
    generalise,
    shuffle_records,
    unlinked_order,
)
from disclosure_control.sdc.hierarchies import (
    MARKERS,
    MISSING,
    TOP,
    WITHHELD,
    Hierarchy,
    HierarchyError,
    fields_with_role,
    load_hierarchies,
    load_hierarchy_file,
)
from disclosure_control.sdc.measures import (
    Measures,
    RiskReport,
    RiskSummary,
    SensitiveMeasures,
    class_sizes,
    k_anonymity,
    l_diversity,
    measure,
    recursive_diversity,
    reidentification_risk,
    t_closeness,
)
from disclosure_control.sdc.tables import (
    SafeTable,
    TableError,
    TablePolicy,
    frequency_table,
    magnitude_table,
)

__all__ = [
    "MARKERS",
    "MISSING",
    "TOP",
    "WITHHELD",
    "AnonymisationError",
    "AnonymisationReport",
    "AnonymisationResult",
    "DifferencingReport",
    "Hierarchy",
    "HierarchyError",
    "Measures",
    "PrivacyModel",
    "Recovered",
    "RiskReport",
    "RiskSummary",
    "SafeTable",
    "SensitiveMeasures",
    "TableError",
    "TablePolicy",
    "Tabulation",
    "anonymise",
    "check_differencing",
    "class_sizes",
    "fields_with_role",
    "frequency_table",
    "generalise",
    "k_anonymity",
    "l_diversity",
    "load_hierarchies",
    "load_hierarchy_file",
    "magnitude_table",
    "measure",
    "protect_against_differencing",
    "recursive_diversity",
    "reidentification_risk",
    "shuffle_records",
    "t_closeness",
    "tabulate",
    "unlinked_order",
]
