"""What serves HTTP to people and other systems: the codec server (and the console and
API to come). May import anything below it; the worker and publisher never import it.
"""
