"""Report builders: JSON, JUnit, HTML and console summaries. Arrives with issue 5."""
