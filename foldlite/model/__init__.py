"""foldlite.model"""
