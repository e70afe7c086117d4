//! Process-level tests of Hive (real `hive` processes arrive with the server issue).
