"""Locust users and load shapes; the only package that imports locust. Arrives with issue 8."""
