"""Pages for people: the operator console under /console/ (service/web/console.py, see
docs/console.md) and the partner page (service/web/partner.py)."""
