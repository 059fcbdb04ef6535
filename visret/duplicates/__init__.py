"""Exact and near-duplicate images: ``find_duplicates(folder_or_index) -> DuplicateReport``."""

from visret.duplicates.find import DEFAULT_DUPLICATES_EXTRACTOR, KEEP_RULES, find_duplicates
from visret.duplicates.report import DuplicateReport, Group, Pair

__all__ = ["DEFAULT_DUPLICATES_EXTRACTOR", "KEEP_RULES", "DuplicateReport", "Group", "Pair", "find_duplicates"]
