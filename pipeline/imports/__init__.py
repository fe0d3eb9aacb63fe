"""Rules maintained in other tools' formats, read from the user's installation at run time."""
