"""Tests of the outpatient and inpatient journeys."""
