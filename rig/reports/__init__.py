"""What a run leaves for people: run.json and traceability.json, the Allure report, timelines."""
