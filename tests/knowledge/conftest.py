"""Sample documents shared by the tests."""

ONCALL_MD = """# On-call rotation

## Paging
The primary on-call engineer is paged through PagerDuty and must acknowledge within 5 minutes.
Escalation to the secondary happens after 15 minutes without an acknowledgement.

## Handover
Handover happens every Monday at 10:00 in #ops-oncall, with a written summary of open incidents.
"""

EXPENSES_MD = """# Expense policy

## Meals
Meals while travelling are reimbursed up to 60 euros per day. Alcohol is never reimbursed.

## Equipment
Monitors and keyboards up to 400 euros need no approval; anything above needs your manager's approval.
"""

VPN_TXT = """Laptop and VPN setup

Install WireGuard from the self-service portal and import the profile named northwind-office.
The VPN is required for the staging cluster and the internal wiki.
"""
