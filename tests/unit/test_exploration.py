from lib import exploration


def test_delay_rates_ignore_flights_that_never_arrived(spark):
    flights = spark.createDataFrame(
        [("EWR", 30.0), ("EWR", 5.0), ("EWR", None), ("JFK", 16.0), ("JFK", 15.0)], "origin string, arr_delay double")
    rows = [tuple(r) for r in exploration.delay_rates(flights, "origin").collect()]
    assert rows == [("EWR", 2, 0.5), ("JFK", 2, 0.5)]
