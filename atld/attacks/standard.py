"""AutoAttack's standard version, as facts (torch-free): its inner attacks in order, their names
in tables, and the budgets of APGD and Square (Croce & Hein 2020; pyautoattack 0.2.0)."""

AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")  # what version='standard' runs, in order
AUTOATTACK_PART_NAMES = {"apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", "square": "Square"}
APGD_STEPS = 100  # APGD iterations, as AutoAttack's standard version
SQUARE_QUERIES = 5000  # Square attack query budget, as AutoAttack's standard version
