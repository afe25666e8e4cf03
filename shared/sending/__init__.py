"""Sending email through ACS: validating requests and shaping them for the ACS Email API."""
