//! Segment groups on the corpus: the nesting of real ADT, ORU, VXU and SIU messages.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "test code: a failed check panics, like assert!")]

mod common;

use hl7v2::{Error, Message, group, group_lenient, structure_for};

fn message(rel: &str) -> Message {
    Message::parse_bytes(&common::read(rel)).unwrap()
}

fn outline(rel: &str) -> String {
    group(&message(rel)).unwrap().outline()
}

/// Corpus messages whose grouping is not clean: (file, extras, missing segment).
const NOT_CLEAN: &[(&str, &[&str], Option<&str>)] = &[
    // v2.8 samples carry RF1 after the insurance, which these structures do not define.
    ("ms-fhir-converter/ADT-A01-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A03-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A04-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A05-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A08-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A13-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A14-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A28-01.hl7", &["RF1"], None),
    ("ms-fhir-converter/ADT-A31-01.hl7", &["RF1"], None),
    // DG1 after GT1 is out of order for ADT_A01.
    ("ms-fhir-converter/ADT01-23.hl7", &["DG1"], None),
    ("ms-fhir-converter/ADT04-251.hl7", &[], Some("EVN")),
    // Named MDM but really an ADT^A01 carrying order segments.
    ("ms-fhir-converter/MDM_01.hl7", &["ORC", "TQ1", "OBR", "NTE", "TXA", "ORC", "OBR"], None),
    ("ms-fhir-converter/ORU-R01-01.hl7", &["PRT", "OBX", "PRT", "TXA"], None),
    (
        "cdc/elr-lab-results/InterPartner-CELR-TX-AIMSPlatform-Prod-Prod-202104050128-STOP-ATVersion23.txt",
        &["ZLR"],
        None,
    ),
    ("cdc/elr-lab-results/ND_23z_Valid1.txt", &["ZLR"], None),
    ("python-hl7/rep_sample_hl7.hl7", &[], Some("OBR")),
    ("python-hl7/sample_msh.hl7", &[], Some("EVN")),
];

#[test]
fn every_corpus_message_with_a_known_structure_groups() {
    let (mut grouped, mut unknown) = (0, 0);
    for (path, bytes) in common::corpus() {
        let Ok(message) = Message::parse_bytes(&bytes) else { continue };
        let Ok(grouping) = group_lenient(&message) else {
            assert!(structure_for(&message).is_none());
            assert_eq!(group(&message), Err(Error::UnknownStructure));
            unknown += 1;
            continue;
        };
        grouped += 1;
        // Grouping loses nothing and reorders nothing.
        let flat: Vec<_> = grouping.root.all_segments().into_iter().cloned().collect();
        assert_eq!(flat, message.segments(), "{path}");
        let extras: Vec<_> = grouping.root.extras().iter().map(|s| s.id().to_owned()).collect();
        let missing: Vec<_> = grouping
            .missing
            .iter()
            .map(|e| match e {
                Error::MissingSegment { segment, .. } => segment.clone(),
                other => panic!("{path}: {other}"),
            })
            .collect();
        let (expected_extras, expected_missing) = NOT_CLEAN
            .iter()
            .find(|(p, _, _)| *p == path)
            .map_or((&[][..], None), |(_, extras, missing)| (*extras, *missing));
        assert_eq!(extras, expected_extras, "{path}");
        assert_eq!(missing, expected_missing.into_iter().collect::<Vec<_>>(), "{path}");
        assert_eq!(group(&message).is_ok(), expected_missing.is_none(), "{path}");
    }
    assert_eq!((grouped, unknown), (113, 62));
}

#[test]
fn oru_with_several_orders_nests_observations() {
    assert_eq!(
        outline("ms-fhir-converter/LAB-ORU-1.hl7"),
        "ORU_R01[MSH PATIENT_RESULT[PATIENT[PID] \
         ORDER_OBSERVATION[OBR OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] SPECIMEN[SPM]] \
         ORDER_OBSERVATION[OBR OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] SPECIMEN[SPM]]]]"
    );
    // ORC OBR OBR: the second OBR opens its own order.
    assert_eq!(
        outline("cdc/elr-lab-results/RawHL7DataCELR.txt"),
        "ORU_R01[MSH SFT PATIENT_RESULT[PATIENT[PID] ORDER_OBSERVATION[ORC OBR] \
         ORDER_OBSERVATION[OBR OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX]] \
         ORDER_OBSERVATION[ORC OBR NTE NTE OBSERVATION[OBX] SPECIMEN[SPM]]]]"
    );
    // Notes follow their observation; OBX after SPM belongs to the specimen.
    assert_eq!(
        outline(
            "cdc/elr-lab-results/InterPartner-CELR-TX-AIMSPlatform-Prod-Prod-20210920104200-STOP-ATillGenVersion251.txt"
        ),
        "ORU_R01[MSH SFT PATIENT_RESULT[PATIENT[PID PD1 NTE NK1 VISIT[PV1 PV2]] ORDER_OBSERVATION[ORC OBR NTE \
         OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] \
         OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] \
         SPECIMEN[SPM SPECIMEN_OBSERVATION[OBX]]] \
         ORDER_OBSERVATION[ORC OBR NTE OBSERVATION[OBX NTE] SPECIMEN[SPM SPECIMEN_OBSERVATION[OBX]]]]]"
    );
    // v2.8 additions (PRT, patient observations, timing, specimen observations) all placed;
    // the v2.9-style OBX/PRT/TXA between ORC and OBR is kept in place as extras.
    assert_eq!(
        outline("ms-fhir-converter/ORU-R01-01.hl7"),
        "ORU_R01[MSH SFT PATIENT_RESULT[PATIENT[PID PRT PATIENT_OBSERVATION[OBX PRT] VISIT[PV1 PRT]] \
         ORDER_OBSERVATION[ORC PRT* OBX* PRT* TXA* OBR NTE NTE PRT TIMING_QTY[TQ1] CTD OBSERVATION[OBX PRT NTE NTE] \
         FT1 CTI SPECIMEN[SPM SPECIMEN_OBSERVATION[OBX] SPECIMEN_OBSERVATION[OBX PRT]]]]]"
    );
}

#[test]
fn navigating_groups() {
    let m = message("ms-fhir-converter/LAB-ORU-1.hl7");
    let root = group(&m).unwrap();
    assert_eq!(root.name(), "ORU_R01");
    let result = root.group("PATIENT_RESULT").unwrap();
    assert_eq!(result.group("PATIENT").unwrap().segment("PID").unwrap().id(), "PID");
    let orders: Vec<_> = result.groups("ORDER_OBSERVATION").collect();
    assert_eq!(orders.len(), 2);
    for order in orders {
        let obr = order.segment("OBR").unwrap();
        let values: Vec<_> = order.groups("OBSERVATION").map(|o| o.segment("OBX").unwrap()).collect();
        assert_eq!(values.len(), 5);
        assert!(values.iter().all(|obx| obx.field(1).is_some()));
        assert!(obr.field(4).is_some());
        assert_eq!(order.group("SPECIMEN").unwrap().all_segments().len(), 1);
    }
}

#[test]
fn adt_vxu_siu_nesting() {
    assert_eq!(
        outline("ms-fhir-converter/ADT-A01-01.hl7").replace("INSURANCE[IN1 IN2 RF1*]", "INSURANCE[IN1 IN2]"),
        "ADT_A01[MSH SFT EVN PID PD1 ARV ROL NK1 PV1 PV2 ARV ROL DB1 OBX AL1 DG1 PROCEDURE[PR1 ROL] GT1 \
         INSURANCE[IN1 IN2] ACC PDA]"
    );
    assert_eq!(
        outline("ms-fhir-converter/ADT01-23.hl7"),
        "ADT_A01[MSH EVN PID NK1 PV1 GT1 DG1* INSURANCE[IN1 IN2] INSURANCE[IN1 IN2] INSURANCE[IN1]]"
    );
    assert_eq!(outline("ms-fhir-converter/ADT-A40-02.hl7"), "ADT_A39[MSH EVN PATIENT[PID MRG] PATIENT[PID MRG]]");
    assert_eq!(outline("ms-fhir-converter/ADT-A11-01.hl7"), "ADT_A09[MSH SFT EVN PID PD1 PV1 PV2 DB1 OBX]");
    assert_eq!(
        outline("ms-fhir-converter/VXU-V04-02.hl7"),
        "VXU_V04[MSH SFT PID PD1 NK1 PATIENT[PV1 PV2] GT1 INSURANCE[IN1 IN2] PERSON_OBSERVATION[OBX] \
         ORDER[ORC RXA RXR OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX] OBSERVATION[OBX]] \
         ORDER[ORC RXA OBSERVATION[OBX]] ORDER[ORC RXA OBSERVATION[OBX]]]"
    );
    assert_eq!(
        outline("ms-fhir-converter/SIU-S12_1.hl7"),
        "SIU_S12[MSH SCH TQ1 NTE PATIENT[PID] \
         RESOURCES[RGS SERVICE[AIS NTE] GENERAL_RESOURCE[AIG NTE] LOCATION_RESOURCE[AIL NTE] PERSONNEL_RESOURCE[AIP NTE NTE]] \
         RESOURCES[RGS SERVICE[AIS] SERVICE[AIS NTE] GENERAL_RESOURCE[AIG] GENERAL_RESOURCE[AIG NTE] LOCATION_RESOURCE[AIL] \
         LOCATION_RESOURCE[AIL NTE] PERSONNEL_RESOURCE[AIP NTE]] \
         RESOURCES[RGS LOCATION_RESOURCE[AIL NTE] PERSONNEL_RESOURCE[AIP NTE]]]"
    );
    // S13–S15 use the SIU_S12 structure whatever MSH-9.3 says.
    for rel in
        ["ms-fhir-converter/SIU-S13-01.hl7", "ms-fhir-converter/SIU-S14-01.hl7", "ms-fhir-converter/SIU-S15-01.hl7"]
    {
        let m = message(rel);
        assert_ne!(m.message_structure().as_deref(), Some("SIU_S12"));
        assert_eq!(structure_for(&m).unwrap().name, "SIU_S12", "{rel}");
    }
}

#[test]
fn strict_grouping_reports_the_missing_segment() {
    assert_eq!(
        group(&message("python-hl7/rep_sample_hl7.hl7")),
        Err(Error::MissingSegment { group: "ORU_R01.PATIENT_RESULT".into(), segment: "OBR".into() })
    );
    assert_eq!(
        group(&message("ms-fhir-converter/ADT04-251.hl7")),
        Err(Error::MissingSegment { group: "ADT_A01".into(), segment: "EVN".into() })
    );
}
