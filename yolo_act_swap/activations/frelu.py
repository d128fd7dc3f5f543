"""(stub: registers nothing yet)"""
