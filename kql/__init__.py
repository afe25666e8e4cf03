"""Log Analytics queries for teams that keep ACS logs, with our taxonomy as KQL datatables."""
