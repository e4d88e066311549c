"""Test helpers shared by the unit, integration, e2e and bench suites (imported as tests.helpers.<area>)."""
