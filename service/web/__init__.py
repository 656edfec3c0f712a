"""Pages for people: the partner page (service/web/partner.py)."""
