from service.segments import ellipsis_for, fits_sms, sms_segments


def test_plain_english_sms_is_one_gsm7_segment_up_to_160_characters():
    assert sms_segments("a" * 160).__dict__ == {"encoding": "GSM-7", "units": 160, "segments": 1}
    assert sms_segments("a" * 161).segments == 2


def test_multipart_gsm7_messages_carry_153_septets_each():
    assert sms_segments("a" * 306).segments == 2
    assert sms_segments("a" * 307).segments == 3


def test_extension_characters_cost_two_septets():
    for char in "{}[]~\\|^€":
        info = sms_segments(char * 80)
        assert (info.encoding, info.units, info.segments) == ("GSM-7", 160, 1), char
    assert sms_segments("{" * 81).segments == 2


def test_an_escaped_character_is_never_split_across_two_parts():
    # 152 + 2 + 152 = 306 septets would be exactly two parts if the escape pair could be split.
    info = sms_segments("a" * 152 + "€" + "a" * 152)
    assert info.units == 306
    assert info.segments == 3


def test_japanese_sms_is_measured_in_ucs2_segments():
    assert sms_segments("障" * 70).__dict__ == {"encoding": "UCS-2", "units": 70, "segments": 1}
    assert sms_segments("障" * 71).segments == 2
    assert sms_segments("障" * 134).segments == 2
    assert sms_segments("障" * 135).segments == 3


def test_one_japanese_character_turns_a_whole_english_sms_into_ucs2():
    info = sms_segments("a" * 100 + "様")
    assert info.encoding == "UCS-2"
    assert info.segments == 2


def test_characters_outside_the_bmp_count_as_two_utf16_units():
    assert sms_segments("😀" * 35).__dict__ == {"encoding": "UCS-2", "units": 70, "segments": 1}
    assert sms_segments("😀" * 36).segments == 2
    # 33 emoji fill 66 of a part's 67 units; the 34th cannot be split, so it starts a new part.
    assert sms_segments("😀" * 67).segments == 3


def test_empty_text_has_no_segments():
    assert sms_segments("").segments == 0


def test_fits_sms_compares_against_the_segment_budget():
    assert fits_sms("障" * 201, 3)
    assert not fits_sms("障" * 202, 3)


def test_ellipsis_keeps_gsm7_text_in_gsm7():
    assert ellipsis_for("Order system outage") == "..."
    assert ellipsis_for("受発注システム") == "…"
    assert sms_segments("a" * 150 + ellipsis_for("a")).encoding == "GSM-7"
