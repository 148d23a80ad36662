# db.cmake: the db binding's C test talks to the throwaway PostgreSQL.
set_tests_properties(unit.db PROPERTIES FIXTURES_REQUIRED pg)
