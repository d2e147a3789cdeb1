"""The version of cdl, in a module of its own so that the modules that write
it into files and reports need not import the whole package."""
__version__ = "0.1.0"
