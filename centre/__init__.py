"""The central web services: the evidence service now, the review workbench next.

Imports core (and may import the dispatch service's pipeline); never the edge
box's stack (``make lint`` checks this).
"""
