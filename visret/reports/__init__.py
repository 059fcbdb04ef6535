"""Reports out: leaderboard formats (a plugin kind), plots and the HTML reports."""

from visret.reports.formats import REPORT_FORMATS, LeaderboardView, ReportFormat, report_format

__all__ = ["REPORT_FORMATS", "LeaderboardView", "ReportFormat", "report_format"]
