"""Behaviour the core ships as plugins, registered ``trylast`` so a site can override it."""
