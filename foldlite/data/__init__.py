"""foldlite.data"""
